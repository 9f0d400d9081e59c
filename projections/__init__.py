"""Read models fed from the Portal's and the CA's event logs."""
