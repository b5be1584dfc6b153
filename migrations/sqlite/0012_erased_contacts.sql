-- Contacts whose personal data was erased (their keys destroyed).
ALTER TABLE rm_contacts ADD COLUMN erased INTEGER NOT NULL DEFAULT 0;
