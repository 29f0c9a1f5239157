"""What the App's operators and panels share: form fields built from the jobs, how a run executes from the App
(immediate with progress, or scheduled), and which dataset fields a form offers for each role. The plugin's
``operators/`` stay thin and forward here; nothing in the library imports this package.
"""
