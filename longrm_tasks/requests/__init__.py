"""Items -> requests: presentations rendered, measured and fitted (`build`), and the request contracts
of the log-likelihood and reward-model judges."""
