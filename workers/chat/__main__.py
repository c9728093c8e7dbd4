"""`python -m workers.chat`: the chat worker (see workers/chat/server.py)."""
from workers.chat.server import main
from workers.common import leave

leave(main())
