"""The Net model: layers, phase filtering, legacy upgrades, wiring and shapes."""
