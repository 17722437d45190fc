"""Every message that crosses a transport, and its msgpack encoding, checked at the edge.

    messages.py   TaskMessage, TaskReply, ContextRequest, ContextReply, and what a
                  transport hands a reader besides (QueueLost, TasksLost, QueueFailed)
    codec.py      msgpack with the types Python code passes around (tuples, sets, ...),
                  nesting bounded; `check_value` says whether a value can travel
    envelope.py   a message as bytes and back: `decode` is total, never pickle
    frames.py     the length-prefixed frames of a context relayed from another process

Nothing here imports the run, the task side, transports or stores.
"""
