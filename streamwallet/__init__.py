"""streamwallet: the application on top — the CLI, the local stack and the demo."""
