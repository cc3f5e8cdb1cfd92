// NO_SYS=1: no OS primitives needed.
