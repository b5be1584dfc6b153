-- Contacts whose personal data was erased (their keys destroyed).
ALTER TABLE rm_contacts ADD COLUMN erased BOOLEAN NOT NULL DEFAULT FALSE;
