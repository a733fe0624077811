"""Test support: a loopback OpenAI-compatible server (also used by benchmarks/)."""
