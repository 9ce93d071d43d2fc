"""Annotation: the review queue (leases), the page annotators use, and the flywheel admin routes."""
