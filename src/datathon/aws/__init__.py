"""The AWS parts of an event (provider: aws): the account's preflight (who, where, quotas, cost), the network,
the machines' role, a key pair and a machine per team. Each concern is a Part of its own (observe -> facts,
a pure plan, teardown); providers/aws.py composes them. Nothing here imports another part of the event: what a
part needs from elsewhere (the bucket's read policy, the user data a machine boots with) is handed in."""
