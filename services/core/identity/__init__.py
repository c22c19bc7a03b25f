"""Who people are: signing in through an OpenID Connect provider and the roles it gives them in smits."""
