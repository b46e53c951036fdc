"""Dagster sensors: decide what happens on each tick; the work lives in the domain packages."""
