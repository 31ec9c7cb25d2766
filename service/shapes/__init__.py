"""Building blocks of the request models: field bounds set by the settings, and turning a
pydantic ValidationError into the API's error body."""
