"""ReadRoom's connection to the cloud archive. No Qt anywhere in this package.

Owns: where ReadRoom keeps its files (`paths`), secrets in the OS keyring (`secrets`), encryption at rest
(`vault`), server profiles and auth, the UPS-RS worklist client, QIDO/WADO/STOW retrieval into the encrypted
local cache, prefetch, and the local audit trail.

Public API (import from the submodules; names are stable):

- ``cloud_client.profiles``: ``ServerProfile`` (name, base_url, user, auth_kind "basic"|"bearer",
  allow_insecure_http, ca_bundle, parallel_connections, transfer_syntaxes, timeout_s, prefetch_count,
  cache_max_bytes, workitems_path, state_suffix), ``load_profiles()``, ``save_profile(p)``, ``get_profile(name)``,
  ``delete_profile(name)``, ``store_password(p, pw)``, ``resolve_password(p, pw=None)`` (argument, then
  ``READROOM_PASSWORD``, then the keyring).
- ``cloud_client.errors``: ``CloudError`` (base; ``str()`` is user-facing), ``AuthError`` ("sign in again"),
  ``ArchiveUnavailable`` (retry later), ``RequestRejected``/``NotFound``, ``AlreadyClaimed``, ``NotHeld``,
  ``InsecureConnectionError``, ``FetchCancelled``.
- ``cloud_client.session.DicomWebSession(profile, password=None)``: ``qido_studies/qido_series/qido_instances``,
  ``metadata(study, series=None)``, ``stow(datasets)``, ``check_sign_in()``, ``request(...)``,
  ``dicomweb_client()`` (a dicomweb-client on the same pooled session).
- ``cloud_client.worklist``: ``WorklistItem``, ``PriorStudy``, ``WorklistClient(session, user=None, audit=,
  cache=)`` with ``my_items(include_pool=False)``, ``get(uid)``, ``claim(uid)`` (-> WorklistItem; raises
  ``AlreadyClaimed``), ``release(uid)`` (UPS cannot go back to SCHEDULED: the holder CANCELs with a reason),
  ``complete(uid, output_sop_refs=[(sop_class, sop_uid, series_uid, study_uid), ...])``, ``priors(item)``.
- ``cloud_client.cache.InstanceCache(root=None, max_bytes=...)``: ``get_dataset(sop)``,
  ``series_datasets(study, series)``, ``instances(study, series=None)``, ``has``, ``pin(study, reason="reading")``
  / ``unpin`` / ``pinned(reason=None)`` (pinned studies are never evicted; the prefetcher pins with reason
  "prefetch" and unpins what left the list), ``evict``.
- ``cloud_client.retrieve``: ``StudyFetcher(session, cache)`` / ``fetch_study(session, cache, study_uid,
  on_progress=, on_instance=, on_metadata=, first=, cancel=, pin=)`` -> ``FetchResult``; ``FetchProgress``.
  Callbacks run on the fetch's own threads (never the caller's); ``cancel`` is a threading.Event or a callable.
- ``cloud_client.prefetch.Prefetcher(worklist, fetcher, count=3)``.
- ``cloud_client.audit.AuditTrail`` (``record(action, user, outcome, study_uids=, workitem_uid=)``,
  ``verify()``, ``export_xml(path)``); actions listed in ``audit.EVENTS``.
- ``cloud_client.archive.ArchiveSink(session)``: ``store(datasets)``, ``complete_workitem(uid, refs)``;
  raises ``ArchiveUnavailable`` for connection errors / 5xx.
"""
