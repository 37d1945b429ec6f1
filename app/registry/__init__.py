"""The team's model registry: named versions, aliases, releases behind a quality gate."""
