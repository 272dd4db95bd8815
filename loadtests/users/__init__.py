"""The locust user classes. These modules import locust: never import them from pytest."""
