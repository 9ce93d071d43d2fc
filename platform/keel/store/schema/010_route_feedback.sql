-- Route feedback (issue 15): `type: "route"` says which intent a request should have been routed to.
-- The flagged requests' messages become labelled router examples for the next gated router fit.
ALTER TABLE feedback ADD COLUMN IF NOT EXISTS intent VARCHAR;  -- route: domain | chat | out_of_scope
