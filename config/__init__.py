"""Settings and data files (the demo district) of Huying."""
