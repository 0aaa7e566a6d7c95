"""Published protocols reproduced for comparison, selected on the command line (`--protocol`)."""
