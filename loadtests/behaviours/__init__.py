"""The simulated city's behaviour: plain Python, no locust, unit-tested in tests/unit.

The locust user classes (loadtests/users/) only translate these models' decisions into API calls.
"""
