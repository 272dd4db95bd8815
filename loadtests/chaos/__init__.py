"""The chaos suite (issue 9): a city under load while its processes are SIGKILLed; then every
guarantee is checked from the API and the ride stream. `make chaos`, `make chaos-ci`."""
