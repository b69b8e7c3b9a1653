-- 0007: each site sends as itself. frappe_sites.senders is the site's sender policy (its default sender,
-- the other addresses it may name in "from", the domains it owns: lib.domain.addresses.SenderPolicy), read
-- with the site's key so a send costs no extra query. message_logs.sender is the sender a message goes out
-- as, resolved when it was accepted: a later change of the policy does not change a message already queued.
ALTER TABLE frappe_sites ADD COLUMN senders jsonb NOT NULL DEFAULT '{}';
ALTER TABLE message_logs ADD COLUMN sender jsonb;
