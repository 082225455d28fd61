"""Fails at import, as a plugin with a missing dependency would."""

import modelplex_dependency_that_is_not_installed  # noqa: F401
