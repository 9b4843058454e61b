"""Tests of the sync engine, its jobs and endpoints."""
