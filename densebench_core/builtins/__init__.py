"""The built-in backends, registered as ordinary plugins (see ``plugins.BUILTIN_MODULES``)."""
