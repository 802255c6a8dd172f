"""The planner's stages, one decision each, in the order ``planner.STAGES`` runs them (all pure)."""
