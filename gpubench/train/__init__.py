"""One client's training: the pipeline and its phases, a Flower app's trainer, client data
on demand, the case checks, and the FedAvg updates and fingerprints every mode hands back."""
