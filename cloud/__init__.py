"""The reference cloud: what a clinic's archive side looks like, for demos, tests and small deployments.

Owns: the `readroom-cloud` launcher (nginx front door + Orthanc with DICOMweb + our UPS-RS worklist service),
routing of new studies to readers, demo studies, and report delivery to the clinic's EHR (FHIR/HL7 outbound).
A separate deployable: it shares no code with the workstation packages; they meet only through DICOM.
"""
