-- 0014: a site the admin allows may send a transactional message (a password reset, an invoice a customer asked
-- for) to an address on its suppression list: the send says "transactional": true.
ALTER TABLE frappe_sites ADD COLUMN suppression_override boolean NOT NULL DEFAULT false;
