"""`dicom-gateway pull`: studies fetched from the identified archive (`source:`) by
query/retrieve, into the running gateway's one pipeline.

How the instances travel (the choice this package makes):

- `source.retrieve: move` (the default): C-MOVE with the gateway's own `listen.ae_title`
  as Move Destination. The archive opens its own association to the running gateway
  (it must know that AE at `listen.host:listen.port`), which receives the instances into
  its normal spool and pipeline.
- `source.retrieve: get`: C-GET. This command receives the instances itself (C-STORE
  sub-operations on its own association, into a private folder under
  `storage_dir/pull/<run-id>/incoming`) and hands each one on by C-STORE to the running
  gateway's `listen` port, so every instance still goes through the one pipeline and
  nothing but the service writes to the spool.

Either way `pull` needs a running gateway (`dicom-gateway run`), and checks it by C-ECHO
first. Studies are retrieved at IMAGE level in batches of SOP Instance UIDs (UID list
matching), so that an interrupted run resumes with the instances still missing.

Modules, bottom up: request (what to pull, the run id), association (one way of opening an
association, TCP_NODELAY on its socket), query (C-FIND), retrieve (C-MOVE and C-GET batches,
the C-GET relay), run_state (what is done, durably), report (the JSON run report, the
audit's forwarded/quarantined counts), runner (the run).
"""
