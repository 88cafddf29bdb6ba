"""Templates of a new connector package, rendered by `core.scaffold` (string.Template files,
`*.tmpl`; `$name`, `$Class`, `$title` and `$dist` are filled in)."""
