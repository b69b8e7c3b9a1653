-- 0003: who manages a site's lifecycle besides the admin API, e.g. the Kubernetes operator's
-- "k8s:<namespace>/<name>/<uid>" for the FrappeSite that registered it. NULL for sites registered through REST.
-- The operator uses it to tell "I registered this earlier and crashed before writing the Secret" from "someone
-- else owns this name", so a retry never registers twice and two FrappeSites never fight over one site.

ALTER TABLE frappe_sites
    ADD COLUMN managed_by text CHECK (managed_by IS NULL OR length(managed_by) BETWEEN 1 AND 512);
