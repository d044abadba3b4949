"""ReadRoom reporting core (no Qt, no VTK).

Owns structured report templates (`templates`), the report model with its states and edit events (`model`),
encrypted crash-proof drafts (`drafts`), validation before signing (`validation`), the reader's signing key and
signatures (`signing`), the outputs written from a signed report - DICOM SR TID 2000 (`sr`), PDF (`pdf`), FHIR
DiagnosticReport (`fhir`), HL7 v2 ORU^R01 (`hl7`) - the durable outbox (`outbox`), the sign/addendum workflow
shared by the GUI and the CLI (`workflow`), peer review / QA (`peer_review`), and the IHE MRRT template importer (`mrrt`).
"""
