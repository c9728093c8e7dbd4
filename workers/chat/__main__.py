"""`python -m workers.chat`: the chat worker (see workers/chat/server.py)."""
import sys

from workers.chat.server import main

sys.exit(main())
