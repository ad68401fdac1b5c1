"""The pure rules and what applies them: breakers, admission, escalation, degradation, budgets, spend, plans, replay."""
