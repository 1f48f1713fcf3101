"""The serving wing: runs shared by the app's sessions.

- ``pool``: the server's runs, their cap, queue and reaper;
- ``process``: a run trained in a child process of a warm fork server;
- ``warm``: what that fork server imports once, so every run starts warm.
The engine (``bnviz``) knows nothing of this wing; the page (``ui/``) talks to it.
"""
