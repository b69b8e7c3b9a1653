-- 0005: the statuses of scheduled sends. A label added to an ENUM cannot be used before its transaction
-- commits, and each migration is one transaction: 0006 uses them.
-- SCHEDULED (waiting for send_at) comes before PENDING; CANCELLED (never sent) is final.
ALTER TYPE message_status ADD VALUE 'SCHEDULED' BEFORE 'PENDING';
ALTER TYPE message_status ADD VALUE 'CANCELLED';
