"""What every layer shares and nothing else: the user-error base, atomic files and locks, logging,
plotting, the tool version, torch.distributed set-up, the statistics of accuracy comparisons
(``stats``) and the command-line plumbing (argument types, common arguments, one error-to-exit-code
path). It imports nothing else of the project."""
