"""A deliberately broken modelplex plugin (used by the tests)."""
