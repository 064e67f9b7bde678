"""Who may do what: API tokens (`tokens`), stored only as digests in the state every API
process shares, and what each token may do (`grants`): a role, extra privileges, and
patterns over dataset names."""
