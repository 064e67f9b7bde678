"""Stage one and two of a file's path: an upload lands (`landing`), is committed to its
dataset's log (`log`, the commit point), with its marks (`marks`); `records` are what the
log holds (where an ingest stands is read in `lakehouse.publish.status`)."""
