"""Court exhibits: bundles of archived captures that anyone can verify and replay offline."""
