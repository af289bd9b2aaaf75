"""The shipped requirement profiles (YAML data): read by the collector and the agent."""
