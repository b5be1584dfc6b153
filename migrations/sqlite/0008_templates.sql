-- Reply templates per organization and channel kind.
CREATE TABLE rm_templates (
    template_id BLOB     PRIMARY KEY,
    org_id      BLOB     NOT NULL,
    kind        TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    bubbles     TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX rm_templates_by_org ON rm_templates (org_id, kind, name);
