"""One analysis per chapter (its parameters, runs, verdict rules and figures), and the helpers of the chapters
"Beyond the paper"; each module registers its chapter's parameters in ``book.registry``."""
