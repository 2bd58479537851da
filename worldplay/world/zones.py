"""Where a scene keeps room for the camera, and the columns of its mover table.

Shared by scene.py (which moves the movers and promises the walkable annulus) and layout.py
(which places objects so the promise holds); both import it, neither imports the other back.

Walkable guarantee (what scripted camera paths rely on): below HEADROOM metres nothing solid,
static or moving, ever comes within the annulus
    CLEAR_INNER * radius - CLEARANCE  <  |xz - center|  <  radius + CLEARANCE.
So a camera path that stays within CLEAR_INNER * radius .. radius of `center` (e.g. circles of
0.3..0.9 * radius) at eye height never passes through an object and keeps at least CLEARANCE
metres from every one; movers above the annulus (flyers) keep their lowest point above
HEADROOM. The disc inside the annulus may hold one centrepiece to orbit around; objects
outside it fill the rest of the room. tests/test_world.py checks this over seeds and times.
"""

from __future__ import annotations

HALF_SIZE = 20.0       # room is [-20, 20] m in x and z: room to walk, small enough to revisit
EYE_HEIGHT = 1.6       # metres, a standing person
RADIUS = 9.0           # free walkable radius around the centre
CLEAR_INNER = 0.25     # inside this fraction of the radius a centrepiece may stand
CLEARANCE = 0.5        # metres between the walkable annulus and any object: a body's width
HEADROOM = 3.0         # metres; flying movers keep their lowest point above this

# Mover table columns: [kind, sx, sy, sz, mat, motion, ax, ay, az, amp, omega, phase, bob]
MOVER_COLS = 13
ORBIT, BOUNCE, PATROL_X, PATROL_Z = 0, 1, 2, 3     # motion kinds (column 5)
