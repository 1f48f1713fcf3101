"""The serving wing: runs shared by the app's sessions.

- ``pool``: the server's runs, known by config and watched by many tabs: cap, queue of runs,
  forks, turns and reaper; ``runs``: a run and a tab's runs, and which configs may be shared;
- ``cache``: finished runs in memory and as run files that outlive the server;
- ``describe``: a run in words (its nearest preset and what differs);
- ``process``: a run trained in a child process of a warm fork server;
- ``warm``: what that fork server imports once, so every run starts warm.
The engine (``bnviz``) knows nothing of this wing; the page (``ui/``) talks to it.
"""
