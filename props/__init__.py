"""Experiment defaults of recbole-eimf (yaml only).

This folder sits at the repository root so that users edit it in place, and ships inside the
package as ``recbole_eimf.props`` so that an installed copy loads the same files.
"""
