"""IAM: users and their access keys (users.py), roles and their sessions (roles.py), managed
policies and their attachments (policies.py), each kind's handler with the actions its verbs need;
the listing `job sweep` makes (listing.py); and what they share (common.py): pages, "already
exists" and "no such entity", and deleting an entity only once what blocks it is cleared.
"""
