"""The `cockpit` command line: argument parsing, the batch printer, plain-text tables, the chat REPL."""
