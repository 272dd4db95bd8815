"""The peers: small honest programs written as a competent user would write them."""
