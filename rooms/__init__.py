"""The room domain: the shared document, participants, the durable update log."""
