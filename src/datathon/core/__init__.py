"""What every part of the event shares: words, context, helpers. Imports no part."""
