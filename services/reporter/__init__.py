"""The reporter service: rates attack results by a risk policy, picks advice and renders the report."""
