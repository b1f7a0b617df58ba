"""Data: dataset discovery (ACDC, Decathlon, pairs, manifests), seeded splits, label sets, the phantom generator."""
