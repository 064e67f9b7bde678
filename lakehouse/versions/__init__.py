"""Stage three of a file's path: the next version of a dataset, built (`build`, `writer`,
with its `objects`), checked (`checks`), and committed exactly once (`commit`, on
`commits`, the compare-and-set of version numbers). What a version is:
`lakehouse.manifest`; what old versions no longer need: `lakehouse.publish.retention`."""
